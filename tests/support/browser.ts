import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';

// Debian's Chromium driven by Playwright; never a downloaded browser. Fake camera and microphone
// (a test pattern and a beep) stand in for real devices.
// `extra`: more flags, or another executable (e.g. a wrapper that runs Chromium in a network namespace).
export async function launchChromium(extra: { args?: string[]; executablePath?: string } = {}): Promise<Browser> {
  const executablePath = extra.executablePath ?? process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`Chromium not found at ${executablePath} (run infra/setup/setup.sh)`);
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
      // Keep background tabs' timers and media running at full rate.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
      ...(extra.args ?? []),
    ],
  });
}

/** Folder for screenshots and other artefacts a person may want to look at (git-ignored). */
export function artifactsDir(): string {
  const dir = path.resolve('.test-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
