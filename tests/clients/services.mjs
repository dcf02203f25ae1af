// Starts our service binaries on free loopback ports for the client tests
// and stops them afterwards.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

const buildDir = process.env.AT_BUILD_DIR;
if (!buildDir) throw new Error('AT_BUILD_DIR is not set (run through ctest)');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitReady(port, child, name) {
  const deadline = Date.now() + 60000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/ready`);
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`${name} not ready on port ${port} within 60 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// Starts `binary` (a service of the build) with extra arguments; returns
// {port, url, stop()}.
export async function startService(binary, args = [], env = {}) {
  const port = await freePort();
  const child = spawn(path.join(buildDir, binary), ['--host', '127.0.0.1', '--port', String(port), ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, ...env },
  });
  await waitReady(port, child, binary);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.on('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export const librivox = '/usr/share/pocketsphinx/test/data/librivox';
