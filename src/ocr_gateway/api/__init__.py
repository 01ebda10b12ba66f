"""HTTP: thin routes that call the services, response models, auth, and the error handler."""
