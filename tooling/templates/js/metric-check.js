// {{name}}: a wasmon metric check (world `metric-check` of wit/plugin.wit).
import { instant } from 'wasmon:plugin/query@0.1.0';

export function evaluate(request) {
  let samples;
  try {
    samples = instant('sum(up)', request.timeMs);
  } catch (e) {
    throw { tag: 'retryable', val: String(e.payload ?? e) };
  }
  const up = samples.length > 0 ? samples[0].value : 0;
  return { ok: up > 0, message: `${up} targets up`, value: up, samples: [] };
}
