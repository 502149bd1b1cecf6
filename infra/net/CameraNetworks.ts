import dns from 'node:dns';
import net from 'node:net';
import { HostList, hostEntryProblem } from './HostList.ts';

// Where the server may connect on a camera's behalf (CAMERA_NETWORKS). "Test now", ONVIF reads, live
// views and recordings make the server open connections to an address an operator typed; without a
// list, a county operator could make it probe any host and port it can reach (the cloud's metadata
// service, the database, another county's network). Names are resolved at each connection and every
// address they resolve to must be listed (a name listed itself is trusted as it resolves); the
// connection goes to the address that was checked, so DNS cannot change its answer in between.

const NAMES = ['loopback', 'private'] as const;

export type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;
export type LookupFunction = (hostname: string, options: dns.LookupOptions, callback: LookupCallback) => void;

/** Checks one entry of CAMERA_NETWORKS; returns why not. */
export function cameraNetworkProblem(entry: string): string | undefined {
  return hostEntryProblem(entry, NAMES);
}

/** The error a refused connection fails with (its code is ECAMERANET). */
export function cameraNetworkError(host: string, list: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${host} is outside CAMERA_NETWORKS (${list})`), { code: 'ECAMERANET' });
}

export class CameraNetworks {
  readonly #list: HostList;

  constructor(list: string) {
    this.#list = new HostList(list, NAMES, 'CAMERA_NETWORKS');
  }

  /** Private networks, plus loopback when the server itself listens only on loopback (one machine, the demo). */
  static defaultFor(httpHost: string): string {
    return new HostList('loopback', ['loopback'], 'HTTP_HOST').has(httpHost) ? 'private,loopback' : 'private';
  }

  /** CAMERA_NETWORKS, or the default for HTTP_HOST (processes that take no config object: the restreamer). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): CameraNetworks {
    return cameraNetworksOf({ CAMERA_NETWORKS: env.CAMERA_NETWORKS, HTTP_HOST: env.HTTP_HOST ?? '127.0.0.1' });
  }

  get text(): string {
    return this.#list.text;
  }

  /** For an IP address outside the list, why it is refused; undefined for a listed IP or any name. */
  literalRefusal(host: string): string | undefined {
    const h = host.replace(/^\[(.*)\]$/, '$1');
    if (!net.isIP(h) || this.#list.hasAddress(h)) return undefined;
    return `${h} 不在允许的摄像机网段内（CAMERA_NETWORKS: ${this.text}） / ${h} is outside the camera networks (CAMERA_NETWORKS: ${this.text})`;
  }

  /** For net.connect / http.request `lookup`: resolves a name and refuses it unless every address is listed. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, options.all ? [] : '');
      const listedName = this.#list.hasName(hostname);
      if (addresses.length === 0 || (!listedName && addresses.some((a) => !this.#list.hasAddress(a.address)))) {
        return callback(cameraNetworkError(hostname, this.text), options.all ? [] : '');
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };

  /** Whether a host (IP or name) may be reached; resolves a name. Returns why not, or undefined. */
  async refusal(host: string): Promise<string | undefined> {
    const h = host.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(h)) return this.literalRefusal(h);
    return new Promise((resolve) => {
      this.lookup(h, { all: true }, (err) => {
        if (!err) resolve(undefined);
        else if (err.code === 'ECAMERANET') resolve(`${h} 解析到允许的摄像机网段之外（CAMERA_NETWORKS: ${this.text}） / ${h} resolves outside the camera networks (CAMERA_NETWORKS: ${this.text})`);
        else resolve(undefined); // a name that does not resolve is refused by the connection itself, as unreachable
      });
    });
  }
}

/** The list a process's config names (CAMERA_NETWORKS, else the default for HTTP_HOST). */
export function cameraNetworksOf(config: { CAMERA_NETWORKS?: string | undefined; HTTP_HOST: string }): CameraNetworks {
  return new CameraNetworks(config.CAMERA_NETWORKS ?? CameraNetworks.defaultFor(config.HTTP_HOST));
}
