// Computes face-api's reference results for the fixtures: boxes, scores,
// landmarks, aligned crops and descriptors, with the CPU backend of the
// TensorFlow.js bundled in @vladmandic/face-api 1.7.15 (tfjs 4.22.0). See
// README.md for how to run it; the Go tests never run it.
//
//	node reference.cjs FACE_API_JS MODEL_DIR PPM...  > reference.json
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');

const [faceApiJs, modelDir, ...images] = process.argv.slice(2);

// The browser bundle, in a context of its own: it defines `faceapi`.
const ctx = { console, setTimeout, clearTimeout, setInterval, clearInterval, TextEncoder, TextDecoder, performance, queueMicrotask };
ctx.globalThis = ctx;
// tfjs picks its browser platform in a worker-like global.
ctx.self = ctx;
ctx.WorkerGlobalScope = class {};
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(faceApiJs, 'utf8') + '\n;globalThis.faceapi = faceapi;', ctx);
const faceapi = ctx.faceapi;
const tf = faceapi.tf;
// Inputs are tensors, so face-api's environment needs no real canvas; it
// only checks inputs with instanceof against these classes.
const none = () => { throw new Error('not available'); };
faceapi.env.setEnv({
  Canvas: class {}, CanvasRenderingContext2D: class {}, Image: class {}, ImageData: class {}, Video: class {},
  createCanvasElement: none, createImageElement: none, createVideoElement: none, fetch: none, readFile: none,
});
// Typed arrays must come from the bundle's realm to pass its instanceof checks.
const [CtxArrayBuffer, CtxUint8Array, CtxInt32Array] = vm.runInContext('[ArrayBuffer, Uint8Array, Int32Array]', ctx);

function weightMap(name) {
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, `${name}-weights_manifest.json`)));
  const map = {};
  for (const group of manifest) {
    const buffers = group.paths.map((p) => fs.readFileSync(path.join(modelDir, p)));
    const buf = Buffer.concat(buffers);
    const ab = new CtxArrayBuffer(buf.length);
    new CtxUint8Array(ab).set(buf);
    Object.assign(map, tf.io.decodeWeights(ab, group.weights));
  }
  return map;
}

function readPPM(file) {
  const b = fs.readFileSync(file);
  const header = b.subarray(0, 64).toString('latin1').match(/^P6\s+(\d+)\s+(\d+)\s+255\s/);
  if (!header) throw new Error(`${file}: not a binary PPM`);
  const [all, w, h] = header;
  const pixels = CtxInt32Array.from(b.subarray(all.length, all.length + w * h * 3));
  return tf.tensor3d(pixels, [Number(h), Number(w), 3], 'int32');
}

const round = (v) => Number(v.toFixed(7));

(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
  faceapi.nets.tinyFaceDetector.loadFromWeightMap(weightMap('tiny_face_detector_model'));
  faceapi.nets.faceLandmark68TinyNet.loadFromWeightMap(weightMap('face_landmark_68_tiny_model'));
  faceapi.nets.faceRecognitionNet.loadFromWeightMap(weightMap('face_recognition_model'));

  const out = { generator: `@vladmandic/face-api ${faceapi.version}, tfjs ${tf.version_core}, backend ${tf.getBackend()}`, inputSize: 416, images: {} };
  for (const file of images) {
    const input = readPPM(file);
    // Every box above 0.05, to see how far a faceless photo is from a face.
    const boxes = await faceapi.detectAllFaces(input, new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.05 }));
    const faces = await faceapi.detectAllFaces(input, new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 }))
      .withFaceLandmarks(true).withFaceDescriptors();
    out.images[path.basename(file, '.ppm')] = {
      width: input.shape[1],
      height: input.shape[0],
      boxes: boxes.map((d) => ({ score: round(d.score), x: round(d.box.x), y: round(d.box.y), width: round(d.box.width), height: round(d.box.height) })),
      faces: faces.map((f) => {
        const crop = f.landmarks.align(null, { useDlibAlignment: true });
        return {
          score: round(f.detection.score),
          box: { x: round(f.detection.box.x), y: round(f.detection.box.y), width: round(f.detection.box.width), height: round(f.detection.box.height) },
          landmarks: f.landmarks.positions.map((p) => [round(p.x), round(p.y)]),
          crop: { x: crop.x, y: crop.y, width: crop.width, height: crop.height },
          descriptor: Array.from(f.descriptor, round),
        };
      }),
    };
    input.dispose();
  }
  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
