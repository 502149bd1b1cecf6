// Service keys used by stations and centres, with their names.
export const SERVICE_NAMES: Record<string, { zh: string; en: string; icon: string }> = {
  civil_affairs: { zh: '民政事务', en: 'Civil affairs', icon: '🏠' },
  social_security: { zh: '社会保障', en: 'Social security', icon: '🛡️' },
  medical_insurance: { zh: '医疗保险', en: 'Medical insurance', icon: '🏥' },
  legal_aid: { zh: '法律援助', en: 'Legal aid', icon: '⚖️' },
  agriculture: { zh: '农业技术', en: 'Farming advice', icon: '🌾' },
  household_registration: { zh: '户籍办理', en: 'Household registration', icon: '📇' },
  elderly_care: { zh: '养老服务', en: 'Elderly care', icon: '🧓' },
};

export function serviceName(key: string, lang: 'zh' | 'en'): string {
  return SERVICE_NAMES[key]?.[lang] ?? key;
}
