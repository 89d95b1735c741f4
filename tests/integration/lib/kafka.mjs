// A Kafka cluster for tests: tests/kafka_mock.c (librdkafka's mock cluster, the real protocol)
// started as a child process on 127.0.0.1 and stopped by its own PID. Commands take brokers
// down and up, move leaders and inject request errors (see tests/kafka_mock.c).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export const MOCK = process.env.TANDEM_KAFKA_MOCK || new URL('../../../build/tandem_kafka_mock', import.meta.url).pathname;

// startKafkaMock({brokers, partitions, topics}) -> {bootstrap, cmd(line), stop()}
export async function startKafkaMock({ brokers = 3, partitions = 4, prefix = 'tandem-' } = {}) {
  // keys: the write keys' topic, compacted on a real cluster (docs/scale-out.md)
  const topics = `${prefix}events,${prefix}changes,${prefix}keys`;
  const proc = spawn(MOCK, ['--brokers', String(brokers), '--partitions', String(partitions), '--topics', topics], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const lines = [];
  let waiter = null;
  createInterface({ input: proc.stdout }).on('line', (l) => {
    if (waiter) { const w = waiter; waiter = null; w(l); } else lines.push(l);
  });
  const next = (ms = 15000) => lines.length ? Promise.resolve(lines.shift()) : new Promise((resolve, reject) => {
    const t = setTimeout(() => { waiter = null; reject(new Error(`kafka mock did not answer: ${stderr}`)); }, ms);
    waiter = (l) => { clearTimeout(t); resolve(l); };
  });
  const m = /^BOOTSTRAP (\S+)$/.exec(await next());
  if (!m) throw new Error(`kafka mock did not start: ${stderr}`);
  return {
    bootstrap: m[1],
    proc,
    async cmd(line) {
      proc.stdin.write(line + '\n');
      const a = await next();
      if (a !== 'ok') throw new Error(`kafka mock: ${a}`);
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

// The server options that point tandem at the mock.
export const kafkaArgs = (mock, extra = []) => ['--log', 'kafka', '--kafka-brokers', mock.bootstrap, ...extra];
