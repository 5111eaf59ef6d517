// Every sentence the scripts show, as [Chinese, English]. Page text lives in the templates.

export const text = {
  chooseFile: ["请先选择一个音频文件。", "Choose an audio file first."],
  fileTooLarge: (limitMb) => [`文件太大了（上限 ${limitMb} MB）。`, `The file is too large (the limit is ${limitMb} MB).`],
  network: ["无法连接服务器，请检查网络后重试。", "The server could not be reached; check the connection and try again."],
  unexpected: (status) => [`服务器返回了意外的错误（HTTP ${status}）。`, `The server answered with an unexpected error (HTTP ${status}).`],
  similarLoading: ["正在比较…", "Comparing…"],
  similarNone: ["还没有其他可以比较的录音。", "There are no other stored recordings to compare with yet."],
  similarCount: (count) => [`最接近的 ${count} 条：`, count === 1 ? "The closest one:" : `The ${count} closest:`],
  speech: ["语音", "speech"],
  timelineSummary: (name, count, total, changes) => [
    `大部分时间是「${name.zh}」（${total} 个时间窗中的 ${count} 个），` +
      (changes ? `主要情绪变化了 ${changes} 次。` : "主要情绪始终没有变。") +
      "每个时间窗 1 秒、间隔 0.5 秒；上方色带是每个窗的主要情绪，灰色区域是语音占比。",
    `Mostly ${name.en} (${count} of ${total} windows); ` +
      (changes ? `the dominant emotion changes ${changes} times. ` : "the dominant emotion never changes. ") +
      "Windows are 1 s long, every 0.5 s; the band on top is each window's dominant emotion, the grey area the share of speech.",
  ],
  chartLabel: (name, total) => [
    `情绪时间线：${total} 个时间窗，主要是「${name.zh}」。方向键逐个查看，回车跳到该处播放。`,
    `Emotion timeline: ${total} windows, mostly ${name.en}. Arrow keys step through them, Enter plays from there.`,
  ],
  sum: ["合计", "sum"],
};
