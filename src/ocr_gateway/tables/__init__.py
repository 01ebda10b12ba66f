"""Tables found on a page: their one shape (model), read from a PDF's text layer (text_layer)
or from an image and its OCR boxes (image). Pure functions, run in the render and OCR pools."""
