import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { generateKeyPair, signJoinToken } from '../../infra/tokens.ts';
import { CASCADE_SECRET, h264RtpParameters, startChain, waitFor, type TreeNode } from '../support/cascade-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Admission of conferences between nodes: a town node (the parent) lets its village child bring a
// conference in only with a grant — a join token for that room signed by the API's private key,
// which someone at the village was admitted with. Nodes hold only the public key, and the cascade
// secret they share does not sign join tokens, so a node cannot let itself into a conference.

const ROOM = 'county-party-committee';

describe('cascade admission: a child brings in only conferences it holds a grant for', { timeout: 60_000 }, () => {
  let town: TreeNode;
  let village: TreeNode;
  const refusals: string[] = [];

  before(async () => {
    [town, village] = (await startChain(['town', 'village'], { admission: 'grant' })) as [TreeNode, TreeNode];
    town.node.cascade!.on('refused', (child, room, why) => refusals.push(`${child} ${room}: ${why}`));
  });

  after(async () => {
    await village?.stop();
    await town?.stop();
  });

  const nextRefusal = (): Promise<string> => new Promise((resolve) => town.node.cascade!.once('refused', (_child, _room, why) => resolve(why)));
  const claims = { userId: 7, displayName: '大柳树村', unitId: 5, room: ROOM, role: 'participant' } as const;
  /** Notes a grant in the village's room and waits for the town's verdict (refused, or the room attached). */
  const offer = async (grant: string | undefined): Promise<string> => {
    const room = village.node.rooms.get(ROOM)!;
    const refused = nextRefusal().then((why) => `refused: ${why}`);
    const attached = waitFor('attached at the town', () => town.link(ROOM, 'child:village') !== undefined, 10_000).then(() => 'attached');
    if (grant) room.noteGrant(grant);
    return Promise.race([refused, attached]);
  };

  test('no grant, a forged one, one from another key, a stale one or one for another room are refused; a real one is admitted', async () => {
    // A server-side sender at the village opens the room without anyone having been admitted there.
    const firstVerdict = nextRefusal();
    await village.node.ingest(ROOM, { displayName: 'village camera', unitId: 5, kind: 'video', source: 'camera', rtpParameters: h264RtpParameters(11_223_344) });
    assert.match(await firstVerdict, /no grant/);
    assert.equal(town.node.rooms.has(ROOM), false, 'the town did not open the conference');

    const minted = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256' }).setIssuer('grassroots-av').setAudience('sfu-join').setExpirationTime('5m').sign(new TextEncoder().encode(CASCADE_SECRET));
    assert.match(await offer(minted), /refused: grant not signed by the API/, 'a token made with the nodes\' shared secret');
    assert.match(await offer(await signJoinToken(generateKeyPair().privateKey, claims)), /refused: grant not signed by the API/, 'another key pair');
    assert.match(await offer(await signJoinToken(TEST_JOIN_KEYS.privateKey, claims, -(24 * 3600 + 120))), /refused: grant not signed by the API, or too old/, 'expired over a day ago');
    assert.match(await offer(await signJoinToken(TEST_JOIN_KEYS.privateKey, { ...claims, room: 'village-own-room' })), /refused: grant is for another conference/);
    assert.equal(town.node.rooms.has(ROOM), false);

    // A token the API issued for this room (expired a minute ago: a long meeting's link may come back late).
    assert.equal(await offer(await signJoinToken(TEST_JOIN_KEYS.privateKey, claims, -60)), 'attached');
    const villageProducer = [...village.node.rooms.get(ROOM)!.ingests.values()][0]!.producer.id;
    await waitFor('the town learns the village camera', () => town.node.cascade!.rooms.get(ROOM)?.producer(villageProducer) !== undefined);
    assert.equal(refusals.length, 5, refusals.join('\n'));
  });

  test("a child's word that a meeting is a venue counts only with the API's grant saying so", async () => {
    // The open meeting above, attached with an open grant: the village turns its room into a venue
    // (a compromised node would) and tells the town, which does not believe it.
    const villageRoom = village.node.rooms.get(ROOM)!;
    const townRoom = town.node.rooms.get(ROOM)!;
    villageRoom.setLayout('venue');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(townRoom.layout, 'open', 'the open meeting stays open at the town');

    // A meeting the API made a venue: its grant says so, and the town follows the child.
    const venueRoom = 'city-wide-venue';
    await village.node.ingest(venueRoom, { displayName: 'village camera', unitId: 5, kind: 'video', source: 'camera', rtpParameters: h264RtpParameters(11_223_355) });
    const room = village.node.rooms.get(venueRoom)!;
    room.setLayout('venue');
    room.noteGrant(await signJoinToken(TEST_JOIN_KEYS.privateKey, { ...claims, room: venueRoom, layout: 'venue' }));
    await waitFor('attached at the town', () => town.link(venueRoom, 'child:village') !== undefined, 10_000);
    assert.equal(town.node.rooms.get(venueRoom)!.layout, 'venue');
  });
});
