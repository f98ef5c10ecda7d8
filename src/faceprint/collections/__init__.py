"""Photo collections: index unlabelled photos, cluster their faces into people, find a
person's photos (issue 12). :mod:`.cluster` is the clustering core."""
