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
  noSpeech: ["（没有说话声）", "(no speech)"],
  timelineSummary: (name, count, spoken, changes, silent) => [
    `有说话声的 ${spoken} 个时间窗中，${count} 个是「${name.zh}」；` +
      (changes ? `主要情绪变化了 ${changes} 次。` : "主要情绪始终没有变。") +
      (silent ? `另有 ${silent} 个时间窗没有说话声（不到一半是语音），记为「未知」，色带上为灰色。` : "") +
      "每个时间窗 1 秒、间隔 0.5 秒；上方色带是每个窗的主要情绪，灰色区域是语音占比。",
    `Mostly ${name.en} (${count} of ${spoken} windows with speech); ` +
      (changes ? `the dominant emotion changes ${times(changes)}. ` : "the dominant emotion never changes. ") +
      (silent ? `${windowCount(silent)} without speech (less than half speech): Unknown, grey in the band. ` : "") +
      "Windows are 1 s long, every 0.5 s; the band on top is each window's dominant emotion, the grey area the share of speech.",
  ],
  timelineNoSpeech: [
    "没有一个时间窗里说话声过半，所以没有可读的情绪。每个时间窗 1 秒、间隔 0.5 秒。",
    "No window is even half speech, so there is no emotion to read. Windows are 1 s long, every 0.5 s.",
  ],
  chartLabel: (name, total) => [
    `情绪时间线：${total} 个时间窗，主要是「${name.zh}」。方向键逐个查看，回车跳到该处播放。`,
    `Emotion timeline: ${total} windows, mostly ${name.en}. Arrow keys step through them, Enter plays from there.`,
  ],
  sum: ["合计", "sum"],
  sensevoiceHears: ["SenseVoice 听到", "SenseVoice hears"],
  emotion2vecHears: ["emotion2vec+ 听到", "emotion2vec+ hears"],
};

function times(count) {
  return count === 1 ? "once" : `${count} times`;
}

function windowCount(count) {
  return count === 1 ? "1 window" : `${count} windows`;
}
