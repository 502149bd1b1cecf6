// Chinese first, English second. The language is remembered per browser.
const zh = {
  appTitle: '基层视频会议与远程监督',
  room: '会议室',
  join: '加入会议',
  leave: '离开会议',
  joining: '正在连接…',
  reconnecting: '连接中断,正在重新连接…',
  joined: '已接通',
  left: '已离开会议',
  participants: '参会方',
  noOthers: '暂无其他参会方',
  you: '本地画面',
  missingToken: '缺少会议凭证(token),请从会议通知中的链接进入。',
  cameraError: '无法打开摄像头或麦克风:',
  language: 'English',
  signIn: '登录',
  signOut: '退出',
  username: '用户名',
  password: '密码',
  signingIn: '正在登录…',
  kiosk: '村服务站',
  desk: '服务中心坐席',
  chooseStation: '选择服务站',
  chooseService: '请选择您要办理的业务',
  waiting: '正在排队,请稍候',
  position: '您前面还有',
  people: '位',
  cancel: '取消排队',
  declined: '服务中心暂时无法接听',
  callEnded: '通话已结束,感谢使用',
  endCall: '结束通话',
  again: '返回首页',
  queue: '排队中的呼叫',
  queueEmpty: '当前没有排队的呼叫',
  accept: '接听',
  decline: '暂不接听',
  declineReason: '暂不接听的原因',
  closeNote: '办理结果备注',
  closeCall: '结束并保存',
  inCallWith: '正在通话:',
  recordCall: '录制本次服务',
  loading: '加载中…',
  noStation: '您的账号下没有服务站',
  home: '首页',
  waitedFor: '已等待',
  seconds: '秒',
} as const;

export type Dict = { [K in keyof typeof zh]: string };

const en: Dict = {
  appTitle: 'Grassroots video conferencing and supervision',
  room: 'Room',
  join: 'Join meeting',
  leave: 'Leave meeting',
  joining: 'Connecting…',
  reconnecting: 'Connection lost, reconnecting…',
  joined: 'Connected',
  left: 'You left the meeting',
  participants: 'Sites',
  noOthers: 'No other sites yet',
  you: 'Local preview',
  missingToken: 'Missing meeting token: open the link from the meeting notice.',
  cameraError: 'Cannot open camera or microphone: ',
  language: '中文',
  signIn: 'Sign in',
  signOut: 'Sign out',
  username: 'User name',
  password: 'Password',
  signingIn: 'Signing in…',
  kiosk: 'Village service station',
  desk: 'Service centre desk',
  chooseStation: 'Choose the station',
  chooseService: 'What do you need help with?',
  waiting: 'You are in the queue, please wait',
  position: 'People ahead of you:',
  people: '',
  cancel: 'Leave the queue',
  declined: 'The service centre cannot take the call now',
  callEnded: 'The call has ended. Thank you.',
  endCall: 'End call',
  again: 'Back to start',
  queue: 'Waiting calls',
  queueEmpty: 'No calls waiting',
  accept: 'Accept',
  decline: 'Decline',
  declineReason: 'Reason for declining',
  closeNote: 'Note on the outcome',
  closeCall: 'End and save',
  inCallWith: 'In a call with: ',
  recordCall: 'Record this session',
  loading: 'Loading…',
  noStation: 'No service station under your account',
  home: 'Home',
  waitedFor: 'waiting',
  seconds: 's',
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
