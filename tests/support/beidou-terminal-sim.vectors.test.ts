import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rdssChecksum, rdssParse, rdssSentence } from './beidou-terminal-sim.ts';

// The Beidou terminal simulator's own RDSS 2.1 framing against published terminal sentences (vendor
// examples quoted in open-source RDSS drivers). Independent of scheduler/channels/nmea.ts.
const published = [
  '$CCICA,0,00*7B',
  '$BDFKI,TXA,Y,Y,0,0000*13',
  '$BDFKI,TXA,N,Y,0,0000*04',
  '$BDFKI,TXA,Y,Y,0,0040*17',
  '$CCTXA,0166166,1,1,3132333433333335*7F',
  '$BDTXR,1,0166166,1,,3132333433333335*46',
  '$BDICI,0166166,02097151,0000011,6,40,3,N,000*33',
  '$CCRMO,BSI,2,0*26',
  // BD-3 (TD3050-style terminals), as logged in public drivers:
  '$CCICR,0,00*68',
  '$BDFKI,082920,TCQ,Y,0,0*70',
  '$BDICP,4238473,0,0,3,0,N,2,N,1,0,0,3,1,60,2,0,0,0,0,21,0,0,0*48',
  '$BDICP,15240507,2032472,1,3,0,N,1,Y,1,0,0,3,1,1,5,1,1,2,2,500,100,10,10*65',
];

test('RDSS 2.1 checksums of published sentences are reproduced and verified', () => {
  for (const line of published) {
    const star = line.indexOf('*');
    assert.equal(rdssChecksum(line.slice(1, star)), line.slice(star + 1), line);
    assert.equal(rdssSentence(line.slice(1, star)), `${line}\r\n`);
    assert.ok(rdssParse(line), line);
  }
  assert.deepEqual(rdssParse('$BDFKI,TXA,Y,Y,0,0040*17'), { talker: 'BD', type: 'FKI', fields: ['TXA', 'Y', 'Y', '0', '0040'] });
  assert.deepEqual(rdssParse('$BDTXR,1,0166166,1,,3132333433333335*46')?.fields, ['1', '0166166', '1', '', '3132333433333335']);
});

test('a wrong checksum, a missing checksum or garbage is rejected', () => {
  assert.equal(rdssParse('$BDFKI,TXA,Y,Y,0,0000*14'), null);
  assert.equal(rdssParse('$BDFKI,TXA,Y,Y,0,0000'), null);
  assert.equal(rdssParse('\u0000\u00ff garbage'), null);
  assert.equal(rdssParse('$CCICA,0,00*7b')?.type, 'ICA', 'hex digits are case-insensitive on input');
});
