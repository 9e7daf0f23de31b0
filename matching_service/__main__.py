from matching_service.server import main

main()
