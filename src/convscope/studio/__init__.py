"""convscope studio: a local web app to watch runs train, try a run on an image, look inside it and explain a
convolution (`convscope serve`). FastAPI serves the pages (Jinja2 templates) and the JSON API they call; the
JavaScript and CSS ship in this package (static/), so it works offline."""
