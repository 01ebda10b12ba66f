"""Publishing pages to RabbitMQ under an operator's control: start, stop, purge."""
