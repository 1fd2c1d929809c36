"""The image path without TensorFlow: ``ImageSequence`` (a ``keras.utils.PyDataset``) over files decoded and resized
by NumPy, cached as a uint8 array, with the augmentation applied on the device. Nothing here imports TensorFlow or
``data.tf_data`` (``tests/data/test_image_path_boundary.py`` enforces it)."""
