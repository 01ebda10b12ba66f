"""The broker: connection and queue declarations (`amqp`), and every message (`contracts`)."""
