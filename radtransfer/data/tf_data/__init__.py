"""The TensorFlow image path: ``make_dataset``'s tf.data pipeline (decode, resize, cache, shuffle, augment, batch),
and epochs drawn from (seed, epoch) by its ``DataStream``."""
