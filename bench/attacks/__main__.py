from bench.attacks.table import main

main()
