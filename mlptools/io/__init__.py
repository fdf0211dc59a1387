"""Reading and writing of structures, descriptors and models.

The only place that opens user paths."""
