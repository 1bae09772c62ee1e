// Words of the page in Chinese (the default) and English, and times in Asia/Shanghai whatever the
// browser's own zone is.

const STRINGS = {
  zh: {
    title: '河长制巡堤查险 · 值班看板',
    short_title: '值班看板',
    lang_toggle: 'EN',
    login: '登录',
    logout: '退出',
    username: '用户名',
    password: '密码',
    login_failed: '用户名或密码错误',
    session_expired: '登录已过期，请重新登录',
    network_error: '网络错误',
    map: '地图',
    coverage: '巡查覆盖',
    water: '水位',
    alerts: '告警',
    issues: '问题',
    stock: '物资',
    state_covered: '已巡查',
    state_due: '即将到期',
    state_overdue: '超时未巡',
    state_nodata: '无记录',
    legend_uncovered: '未覆盖段',
    legend_river: '河道（示意）',
    last_covered: '最近巡查',
    never: '从未',
    interval: '巡查间隔',
    minutes: '分钟',
    ratio: '覆盖率',
    stage: '汛情',
    stage_normal: '正常',
    stage_watch: '设防',
    stage_warning: '警戒',
    stage_guarantee: '保证',
    response: '应急响应',
    response_none: '未启动',
    level_m: '水位',
    thresholds: '特征水位',
    watch_m: '设防',
    warning_m: '警戒',
    guarantee_m: '保证',
    no_gauge: '暂无水位数据',
    observed: '观测时间',
    alerts_unavailable: '本服务器未提供告警',
    alerts_live: '实时',
    alerts_offline: '重连中…',
    alerts_polling: '每5秒刷新',
    no_alerts: '当前无告警',
    ack: '确认',
    acked_by: '已确认',
    drill: '演练',
    resolved: '已解除',
    filter_status: '状态',
    filter_severity: '等级',
    filter_category: '类别',
    filter_segment: '堤段',
    all: '全部',
    open_issues: '未办结',
    no_issues: '没有符合条件的问题',
    severity_1: '一般',
    severity_2: '较大',
    severity_3: '重大',
    critical: '重大险情',
    photos: '照片',
    photo_pending: '照片上传中',
    history: '处理记录',
    actions: '处置',
    note: '备注',
    assignee: '派给',
    done: '已提交',
    close: '关闭',
    event_refused: '未生效',
    issue_overdue: '处置超期',
    issue_escalated: '超时未受理',
    due_at: '限期',
    reported_at: '上报时间',
    chainage: '桩号',
    outflow_clear: '清水',
    outflow_muddy: '浑水',
    depot: '仓库',
    item: '物资',
    on_hand: '库存',
    quota: '定额',
    shortfall: '缺口',
    expiring: '临期/过期批次',
    expires: '到期',
    no_shortfall: '各仓库物资充足',
    updated: '更新于',
    role_patroller: '巡查员',
    role_duty_lead: '值班负责人',
    role_admin: '管理员',
    kind_stage_changed: '汛情变化',
    kind_rapid_rise: '水位快速上涨',
    kind_segment_overdue: '堤段超时未巡',
    kind_critical_hazard: '重大险情',
    kind_stock_below_quota: '物资低于定额',
    kind_lot_expiring: '物资临期',
    kind_dispatch_overdue: '派遣逾期',
    kind_issue_unaccepted: '受理超时',
    kind_response_changed: '应急响应',
  },
  en: {
    title: 'River chief · flood watch · duty dashboard',
    short_title: 'Duty dashboard',
    lang_toggle: '中文',
    login: 'Log in',
    logout: 'Log out',
    username: 'Username',
    password: 'Password',
    login_failed: 'Wrong username or password',
    session_expired: 'Your session has ended; please log in again',
    network_error: 'Network error',
    map: 'Map',
    coverage: 'Patrol coverage',
    water: 'Water level',
    alerts: 'Alerts',
    issues: 'Issues',
    stock: 'Supplies',
    state_covered: 'Covered',
    state_due: 'Due soon',
    state_overdue: 'Overdue',
    state_nodata: 'No data',
    legend_uncovered: 'Not walked',
    legend_river: 'River (schematic)',
    last_covered: 'Last covered',
    never: 'never',
    interval: 'Interval',
    minutes: 'min',
    ratio: 'Covered',
    stage: 'Stage',
    stage_normal: 'Normal',
    stage_watch: 'Watch',
    stage_warning: 'Warning',
    stage_guarantee: 'Guarantee',
    response: 'Response',
    response_none: 'none',
    level_m: 'Level',
    thresholds: 'Thresholds',
    watch_m: 'Watch',
    warning_m: 'Warning',
    guarantee_m: 'Guarantee',
    no_gauge: 'No gauge data',
    observed: 'Observed',
    alerts_unavailable: 'This server has no alerts',
    alerts_live: 'live',
    alerts_offline: 'reconnecting…',
    alerts_polling: 'refreshed every 5 s',
    no_alerts: 'No alerts',
    ack: 'Acknowledge',
    acked_by: 'Acknowledged',
    drill: 'DRILL',
    resolved: 'resolved',
    filter_status: 'Status',
    filter_severity: 'Severity',
    filter_category: 'Category',
    filter_segment: 'Segment',
    all: 'All',
    open_issues: 'Open',
    no_issues: 'No issues match',
    severity_1: 'minor',
    severity_2: 'significant',
    severity_3: 'major',
    critical: 'Critical hazard',
    photos: 'Photos',
    photo_pending: 'photo still uploading',
    history: 'History',
    actions: 'Actions',
    note: 'Note',
    assignee: 'Send to',
    done: 'Done',
    close: 'Close',
    event_refused: 'not applied',
    issue_overdue: 'past due',
    issue_escalated: 'not accepted in time',
    due_at: 'Due',
    reported_at: 'Reported',
    chainage: 'Chainage',
    outflow_clear: 'clear water',
    outflow_muddy: 'muddy water',
    depot: 'Depot',
    item: 'Item',
    on_hand: 'On hand',
    quota: 'Quota',
    shortfall: 'Short',
    expiring: 'Lots past or near their date',
    expires: 'expires',
    no_shortfall: 'Every depot holds its quota',
    updated: 'Updated',
    role_patroller: 'patroller',
    role_duty_lead: 'duty lead',
    role_admin: 'admin',
    kind_stage_changed: 'Flood stage changed',
    kind_rapid_rise: 'Rapid rise',
    kind_segment_overdue: 'Segment overdue',
    kind_critical_hazard: 'Critical hazard',
    kind_stock_below_quota: 'Stock below quota',
    kind_lot_expiring: 'Lot expiring',
    kind_dispatch_overdue: 'Dispatch overdue',
    kind_issue_unaccepted: 'Not accepted in time',
    kind_response_changed: 'Emergency response',
  },
};

// Issue statuses and event kinds: [zh, en].
const STATUS = {
  reported: ['已上报', 'reported'],
  accepted: ['已受理', 'accepted'],
  dispatched: ['已派遣', 'dispatched'],
  in_progress: ['处置中', 'in progress'],
  resolved: ['已处置', 'resolved'],
  verified: ['已核验', 'verified'],
  rejected: ['已驳回', 'rejected'],
  duplicate: ['重复', 'duplicate'],
  reopened: ['重新打开', 'reopened'],
  comment: ['备注', 'comment'],
};

// What a duty lead may do from each status (shared/src/domain.rs, IssueEventKind::apply), with the
// button label [zh, en].
const ACTIONS = {
  accepted: ['受理', 'Accept'],
  dispatched: ['派遣', 'Dispatch'],
  in_progress: ['开始处置', 'Start work'],
  resolved: ['标记已处置', 'Mark resolved'],
  verified: ['核验办结', 'Verify'],
  rejected: ['驳回', 'Reject'],
  reopened: ['重新打开', 'Reopen'],
  comment: ['添加备注', 'Comment'],
};

export const NEXT_ACTIONS = {
  reported: ['accepted', 'dispatched', 'rejected', 'comment'],
  accepted: ['dispatched', 'in_progress', 'resolved', 'rejected', 'comment'],
  dispatched: ['in_progress', 'resolved', 'dispatched', 'comment'],
  in_progress: ['resolved', 'dispatched', 'comment'],
  resolved: ['verified', 'reopened', 'comment'],
  verified: ['reopened', 'comment'],
  rejected: ['reopened', 'comment'],
  duplicate: ['reopened', 'comment'],
};

export const OPEN_STATUSES = ['reported', 'accepted', 'dispatched', 'in_progress', 'resolved'];
export const ALL_STATUSES = Object.keys(STATUS).filter((s) => s !== 'reopened' && s !== 'comment');

let lang = localStorage.getItem('rc.lang') === 'en' ? 'en' : 'zh';

export function getLang() {
  return lang;
}

export function setLang(l) {
  lang = l === 'en' ? 'en' : 'zh';
  localStorage.setItem('rc.lang', lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

export function t(key) {
  return STRINGS[lang][key] ?? STRINGS.zh[key] ?? key;
}

export function statusLabel(s) {
  const pair = STATUS[s];
  return pair ? pair[lang === 'zh' ? 0 : 1] : s;
}

export function actionLabel(kind) {
  const pair = ACTIONS[kind];
  return pair ? pair[lang === 'zh' ? 0 : 1] : kind;
}

const formats = {};

function formatter(style) {
  const key = `${lang}:${style}`;
  if (!formats[key]) {
    const locale = lang === 'zh' ? 'zh-CN' : 'en-GB';
    const opts = { timeZone: 'Asia/Shanghai', hour12: false };
    if (style === 'full') {
      Object.assign(opts, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
    } else if (style === 'short') {
      Object.assign(opts, { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
    } else {
      Object.assign(opts, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    }
    formats[key] = new Intl.DateTimeFormat(locale, opts);
  }
  return formats[key];
}

/** An RFC 3339 time as Asia/Shanghai wall-clock time ('' for none). */
export function fmtTime(iso, style = 'full') {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return formatter(style).format(d);
}

/** "12 min ago" / "12分钟前" for a duration in milliseconds. */
export function fmtAgo(ms) {
  const min = Math.max(0, Math.round(ms / 60000));
  if (lang === 'zh') {
    if (min < 60) return `${min}分钟前`;
    if (min < 48 * 60) return `${Math.round(min / 60)}小时前`;
    return `${Math.round(min / 1440)}天前`;
  }
  if (min < 60) return `${min} min ago`;
  if (min < 48 * 60) return `${Math.round(min / 60)} h ago`;
  return `${Math.round(min / 1440)} d ago`;
}
