import type { Random } from './random.ts';

// Name material for a realistic Weifang-like tree: the real 12 county-level divisions, and
// generated town, community and village names built the way Shandong place names usually are.

export const CITY = { name: '潍坊市', code: '370700' };

export const COUNTIES: ReadonlyArray<{ name: string; code: string }> = [
  { name: '潍城区', code: '370702' },
  { name: '寒亭区', code: '370703' },
  { name: '坊子区', code: '370704' },
  { name: '奎文区', code: '370705' },
  { name: '临朐县', code: '370724' },
  { name: '昌乐县', code: '370725' },
  { name: '青州市', code: '370781' },
  { name: '诸城市', code: '370782' },
  { name: '寿光市', code: '370783' },
  { name: '安丘市', code: '370784' },
  { name: '高密市', code: '370785' },
  { name: '昌邑市', code: '370786' },
];

const SURNAMES = '王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文'.split('');
const GIVEN = '伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国建华志强玉兰海燕红梅春梅立新国庆德胜学文振华文静宝山庆丰永福'.split('');
const PLACE_A = '东西南北前后上下大小新老'.split('');
const PLACE_ROOT = '河山湖泉林庄桥岭坡洼沟店集屯营寨堡台岗口湾'.split('');
const TOWN_ROOT = [
  '柳疃', '营里', '双台', '朱里', '固堤', '开元', '央子', '高里', '南孙', '黄旗堡', '杨家埠', '寒亭', '九龙', '凤凰', '太保庄', '王家庄',
  '于河', '望留', '符山', '乐埠山', '大柳树', '尧沟', '鄌郚', '营丘', '红河', '五图', '朱刘', '宝城', '城关', '北岩', '鹤山', '马宋',
  '辛寨', '冶源', '柳山', '九山', '龙岗', '东城', '云门山', '王府', '黄楼', '弥河', '王坟', '庙子', '邵庄', '高柳', '何官', '东夏',
  '谭坊', '口埠', '密州', '龙都', '舜王', '枳沟', '贾悦', '石桥子', '相州', '昌城', '百尺河', '辛兴', '林家村', '皇华', '桃林',
  '圣都', '文家', '侯镇', '洛城', '古城', '孙家集', '稻田', '上口', '化龙', '营里', '台头', '田柳', '羊口', '双王城', '新安',
  '兴安', '景芝', '凌河', '官庄', '石埠子', '石堆', '柘山', '辉渠', '吾山', '大盛', '金冢子', '朝阳', '醴泉', '密水', '夏庄',
  '姜庄', '大牟家', '阚家', '井沟', '柴沟', '胶河', '奎聚', '都昌', '围子', '饮马', '北孟', '下营', '龙池', '卜庄', '石埠',
  '北海', '潍州', '清池', '南苑', '廿里堡', '梨园', '大虞', '北关', '东关', '新华', '广文', '北苑', '城关西', '坊城', '凤鸣',
];
const STREET_SUFFIX = ['街道', '镇', '镇', '镇', '街道', '乡'];
const COMMUNITY_ROOT = ['和谐', '幸福', '阳光', '富民', '兴旺', '安居', '团结', '友谊', '丰收', '振兴', '民主', '东风', '红旗', '向阳', '光明', '永安', '太平', '康乐', '新华', '繁荣', '利民', '福源', '瑞丰', '金泰'];
const VILLAGE_SUFFIX = ['村', '家庄村', '家村', '家庄子村', '官庄村', '家疃村', '家屯村', '家营村'];

export function personName(rng: Random): string {
  const given = rng.chance(0.4) ? rng.pick(GIVEN) : rng.pick(GIVEN) + rng.pick(GIVEN);
  return rng.pick(SURNAMES) + given;
}

export function townName(rng: Random, index: number): string {
  const root = TOWN_ROOT[index % TOWN_ROOT.length]!;
  return index < TOWN_ROOT.length ? root + rng.pick(STREET_SUFFIX) : rng.pick(PLACE_A) + root + rng.pick(STREET_SUFFIX);
}

export function communityName(rng: Random): string {
  return rng.chance(0.5) ? rng.pick(COMMUNITY_ROOT) + '社区' : rng.pick(PLACE_A) + rng.pick(PLACE_ROOT) + '社区';
}

export function villageName(rng: Random): string {
  const r = rng.next();
  if (r < 0.55) {
    const suffix = rng.pick(VILLAGE_SUFFIX);
    return rng.pick(SURNAMES) + (suffix === '村' ? rng.pick(PLACE_ROOT) + '村' : suffix);
  }
  if (r < 0.85) return rng.pick(PLACE_A) + rng.pick(SURNAMES) + rng.pick(['家庄村', '家村', '村']);
  return rng.pick(PLACE_A) + rng.pick(PLACE_ROOT) + '村';
}

/** A name not yet used among siblings: retries, then numbers the name as real registers do (二村). */
export function uniqueName(used: Set<string>, make: () => string): string {
  for (let i = 0; i < 20; i++) {
    const n = make();
    if (!used.has(n)) {
      used.add(n);
      return n;
    }
  }
  const base = make();
  for (let k = 2; ; k++) {
    const n = base.replace(/(村|社区|镇|街道|乡)$/, `${k}$1`);
    if (!used.has(n)) {
      used.add(n);
      return n;
    }
  }
}

export const SERVICES = ['civil_affairs', 'social_security', 'medical_insurance', 'legal_aid', 'agriculture', 'household_registration', 'elderly_care'];
