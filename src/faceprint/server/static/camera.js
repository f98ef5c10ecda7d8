// The browser camera (getUserMedia): open it into a <video>, grab a frame as JPEG, close it.

const WHY = {
  NotAllowedError: "the camera permission was refused",
  NotFoundError: "no camera was found",
  NotReadableError: "the camera is busy or cannot be read",
  OverconstrainedError: "the camera cannot give the size asked for",
  SecurityError: "the camera is not allowed on this page",
};

/** Open the camera into `video` and wait for its first frame; answers the MediaStream. */
export async function openCamera(video) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser offers no camera to this page (it needs https or localhost)");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (err) {
    throw new Error(`cannot open the camera: ${WHY[err.name] || err.message || err.name}`);
  }
  video.srcObject = stream;
  await video.play();
  if (!video.videoWidth) {
    await new Promise((resolve) => video.addEventListener("loadeddata", resolve, { once: true }));
  }
  return stream;
}

export function closeCamera(video, stream) {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  video.pause();
  video.srcObject = null;
}

/** Copy the video's current frame, at its own size, onto `canvas`. */
export function grabFrame(video, canvas) {
  if (!video.videoWidth) throw new Error("the camera has no picture yet; try again in a moment");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return canvas;
}

export function toJpeg(canvas, quality = 0.85) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the frame could not be encoded"))),
      "image/jpeg", quality);
  });
}
