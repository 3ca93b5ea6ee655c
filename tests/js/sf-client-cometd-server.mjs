// A real Bayeux server (npm `cometd-nodejs-server` 1.2) for the sors-salesforce streaming tests.
// Usage: node sf-client-cometd-server.mjs [timeoutMs]
// Prints "PORT <n>" once listening on 127.0.0.1, then one line per server-side happening:
//   HANDSHAKE <clientId> | SUBSCRIBE <clientId> <channel> <ext-json> | META_DISCONNECT <clientId>
//   COOKIE <cookie header of a /meta/connect request>
// Reads commands on stdin, one per line:
//   publish <channel> <replayId> <rowId>   publish a PushTopic-shaped event
//   forget                                 disconnect every server session (server "forgets" them)
import http from 'node:http';
import readline from 'node:readline';
import cometdServer from 'cometd-nodejs-server';

const { createCometDServer } = cometdServer;

const timeout = Number(process.argv[2] ?? '2000');
const cometd = createCometDServer({ timeout, maxInterval: 10000 });
const sessions = new Map();

cometd.addListener('sessionAdded', (session) => {
  sessions.set(session.id, session);
  console.log(`HANDSHAKE ${session.id}`);
});
cometd.addListener('sessionRemoved', (session) => sessions.delete(session.id));
cometd.addExtension({
  incoming(server, session, message, callback) {
    if (message.channel === '/meta/subscribe') {
      console.log(`SUBSCRIBE ${message.clientId} ${message.subscription} ${JSON.stringify(message.ext ?? null)}`);
    } else if (message.channel === '/meta/disconnect') {
      console.log(`META_DISCONNECT ${message.clientId}`);
    }
    callback(undefined, true);
  },
});

const server = http.createServer((req, res) => {
  if (req.headers.cookie) console.log(`COOKIE ${req.headers.cookie}`);
  cometd.handle(req, res);
});
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === 'publish') {
    const [channel, replayId, rowId] = args;
    // Look the channel up on every publish: idle channels are swept.
    const ch = cometd.getServerChannel(channel) || cometd.createServerChannel(channel);
    ch.publish(null, {
      event: { type: 'created', createdDate: new Date().toISOString(), replayId: Number(replayId) },
      sobject: { Id: rowId, Status__c: 'New' },
    });
    console.log(`PUBLISHED ${replayId}`);
  } else if (cmd === 'forget') {
    const all = [...sessions.values()];
    for (const s of all) s.disconnect();
    console.log(`FORGOT ${all.length}`);
  }
});
process.stdin.on('end', () => process.exit(0));
