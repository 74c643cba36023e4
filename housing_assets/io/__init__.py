"""Everything that touches the outside world, with explicit clients passed in: the dataset's
source (http, file, gs), the landing zone, Google Cloud Storage and the MLflow Model Registry.
The ML library (``housing_assets.ml``) and the steps (``housing_assets.steps``) stay pure."""
