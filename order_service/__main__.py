from order_service.server import main

main()
