// What the page says while an analysis runs, from the job's news (GET /analyse/<job>): the stage in
// words, chunk n of m while the model works through a long recording, and the time so far.
import { duration } from "./dom.js";

const STAGES = {
  queued: ["排队等待分析…", "Waiting for its turn…"],
  decode: ["正在解码音频…", "Decoding the audio…"],
  vad: ["正在找出说话的部分…", "Finding where people speak…"],
  transcribe: ["正在转写说了什么…", "Writing down what was said…"],
  save: ["正在保存结果…", "Saving the result…"],
};

// { stage: [zh, en], elapsed: [zh, en], done: chunks finished (null when not counted) }
export function progressWords({ stage, step = 0, steps = 0, elapsed_s: elapsed = 0 }) {
  const [zhTime, enTime] = duration(elapsed);
  return {
    stage: stageWords(stage, step, steps),
    elapsed: [`已用 ${zhTime}`, `${enTime} so far`],
    done: stage === "model" && steps > 1 ? step - 1 : null,
  };
}

function stageWords(stage, step, steps) {
  if (stage !== "model") return STAGES[stage] ?? STAGES.queued;
  if (steps > 1) return [`模型分析中：第 ${step} 段，共 ${steps} 段…`, `Running the model: chunk ${step} of ${steps}…`];
  return ["模型分析中…", "Running the model…"];
}
