"""Video and camera streams: read frames (:mod:`.sources`), track faces across frames
(:mod:`.tracking`), and recognise each track by voting over its frames (:mod:`.stream`)."""
