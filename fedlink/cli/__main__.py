from fedlink.cli import main

main()
