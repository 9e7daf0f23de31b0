from bench.loadgen.cli import main

main()
