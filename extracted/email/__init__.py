"""The email service, extracted: a RabbitMQ consumer (``python -m extracted.email.worker``)."""
