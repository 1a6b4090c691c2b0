from bench.synth.scenario import main

main()
