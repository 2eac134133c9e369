// A free TCP port on 127.0.0.1 for a test's own listener (agents' peer endpoints, receivers): bound
// and released here, so another process may take it before the test binds it; callers that can,
// retry on EADDRINUSE.
import { createServer } from 'node:net';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, host, resolve);
  });
  const a = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (!a || typeof a !== 'object') throw new Error('no port');
  return a.port;
}
