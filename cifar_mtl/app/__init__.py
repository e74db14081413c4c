"""Everything Streamlit: the app's building blocks, shared by `navigation.py` and the views in `views/`.

The only package of `cifar_mtl` that imports Streamlit, and it never imports TensorFlow.
One module per concern:

- `state`: session-state keys, the page address (run and reviewer), the shared error filter;
- `loaders`: cached reads (runs, predictions, the mislabel ranking, the review store, test images);
- `messages`: errors as advice instead of tracebacks, markdown escaping, flash messages;
- `figures`: figure builders, pure (tables in, figures out): Plotly, and the Map's Vega-Lite spec;
- `captions`: the text under images and about filters, pure;
- `widgets`: tag controls, step buttons, thumbnail grid, paged lists, filter controls;
- `sidebar`: the sidebar and which run is under review;
- `retrain_form`: the Retrain form's fields, values and problems, driven by `config.SETTINGS`;
- `evidence_panel`: an error's evidence (saliency, badges, nearest training images);
- `label_loop`: the Mislabels train split's and Label sets' tables;
- `map_thumbnails`: the Map's hover pictures, written as static files;
- `server`: the middleware `app.py` serves the app with (the server's address in each page).

Views only lay out a screen from these and the library's analyses.
"""
