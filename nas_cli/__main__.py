from nas_cli.cli import search_main

search_main()
