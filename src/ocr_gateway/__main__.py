from ocr_gateway.cli import main

main()
