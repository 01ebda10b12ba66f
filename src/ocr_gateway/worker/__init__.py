"""The reference OCR worker: consumes the pages queue and answers on the results queue.

It shares only the queue contracts with the gateway (plain JSON over AMQP), so it runs on any
machine that reaches RabbitMQ: `ocr-gateway worker` or `python -m ocr_gateway.worker`.
"""
