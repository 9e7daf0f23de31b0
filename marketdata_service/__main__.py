from marketdata_service.server import main

main()
