from policykd.cli.main import main

main()
