"""EXIF: the tag catalogue (`tags`), the three readers (`parse`) and the train-fitted encoder (`encode`)."""
