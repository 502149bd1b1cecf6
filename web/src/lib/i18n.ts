// Chinese first, English second. The language is remembered per browser.
const zh = {
  appTitle: '基层视频会议与远程监督',
  room: '会议室',
  join: '加入会议',
  leave: '离开会议',
  joining: '正在加入…',
  reconnecting: '连接中断,正在重新连接…',
  joined: '已加入',
  left: '已离开会议',
  participants: '参会方',
  noOthers: '暂无其他参会方',
  you: '本地画面',
  missingToken: '缺少会议凭证(token),请从会议通知中的链接进入。',
  cameraError: '无法打开摄像头或麦克风:',
  language: 'English',
} as const;

type Dict = { [K in keyof typeof zh]: string };

const en: Dict = {
  appTitle: 'Grassroots video conferencing and supervision',
  room: 'Room',
  join: 'Join meeting',
  leave: 'Leave meeting',
  joining: 'Joining…',
  reconnecting: 'Connection lost, reconnecting…',
  joined: 'Joined',
  left: 'You left the meeting',
  participants: 'Sites',
  noOthers: 'No other sites yet',
  you: 'Local preview',
  missingToken: 'Missing meeting token: open the link from the meeting notice.',
  cameraError: 'Cannot open camera or microphone: ',
  language: '中文',
};

export type Lang = 'zh' | 'en';
const dicts: Record<Lang, Dict> = { zh, en };

export function initialLang(): Lang {
  const saved = typeof localStorage !== 'undefined' ? localStorage.getItem('lang') : null;
  return saved === 'en' ? 'en' : 'zh';
}

export function dict(lang: Lang): Dict {
  return dicts[lang];
}

export function saveLang(lang: Lang): void {
  localStorage.setItem('lang', lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}
