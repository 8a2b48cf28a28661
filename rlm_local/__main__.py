from rlm_local.cli import main

main()
