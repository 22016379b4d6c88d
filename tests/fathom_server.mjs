// Starts `fathom serve` on a free port for the JavaScript test suites (tests/qdrant-js,
// tests/console) and resolves once it listens. No dependencies: each suite imports it by path.
import { spawn } from 'node:child_process';

// Returns {server (the child process), url}; `args` come after `serve --port 0`.
export function startFathom(bin, args, env = process.env) {
  const server = spawn(bin, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env });
  const url = new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    server.on('exit', (code) => reject(new Error(`fathom serve exited with ${code} before listening`)));
  });
  return url.then((u) => ({ server, url: u }));
}
