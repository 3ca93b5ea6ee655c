// A real Bayeux server (npm `faye` 1.4 NodeAdapter) for the sors-salesforce streaming tests.
// Usage: node sf-client-faye.mjs [timeoutSeconds]
// Prints "PORT <n>" once listening on 127.0.0.1, then one line per server-side happening:
//   HANDSHAKE <clientId> | SUBSCRIBE <clientId> <channel> <ext-json> | META_DISCONNECT <clientId>
// Reads commands on stdin, one per line:
//   publish <channel> <replayId> <rowId>   publish a PushTopic-shaped event
//   forget                                 destroy every client session (server "forgets" them)
import http from 'node:http';
import readline from 'node:readline';
import faye from 'faye';

const timeout = Number(process.argv[2] ?? '2');
const bayeux = new faye.NodeAdapter({ mount: '/cometd/62.0', timeout });
const clients = new Set();

bayeux.on('handshake', (id) => { clients.add(id); console.log(`HANDSHAKE ${id}`); });
bayeux.on('disconnect', (id) => clients.delete(id));
bayeux.addExtension({
  incoming(message, callback) {
    if (message.channel === '/meta/subscribe') {
      console.log(`SUBSCRIBE ${message.clientId} ${message.subscription} ${JSON.stringify(message.ext ?? null)}`);
    } else if (message.channel === '/meta/disconnect') {
      console.log(`META_DISCONNECT ${message.clientId}`);
    }
    callback(message);
  },
});

const server = http.createServer();
bayeux.attach(server);
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === 'publish') {
    const [channel, replayId, rowId] = args;
    bayeux.getClient().publish(channel, {
      event: { type: 'created', createdDate: new Date().toISOString(), replayId: Number(replayId) },
      sobject: { Id: rowId, Status__c: 'New' },
    });
    console.log(`PUBLISHED ${replayId}`);
  } else if (cmd === 'forget') {
    for (const id of clients) bayeux._server._engine.destroyClient(id);
    console.log(`FORGOT ${clients.size}`);
    clients.clear();
  }
});
process.stdin.on('end', () => process.exit(0));
