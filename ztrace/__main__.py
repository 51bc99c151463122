from ztrace.cli.main import main

main()
