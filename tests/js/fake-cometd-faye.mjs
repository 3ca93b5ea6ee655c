// The faye 1.4 client (what jsforce streams with) against the fake streaming endpoint.
//
// Usage: node fake-cometd-faye.mjs <url> <token> <channel> <replayId>
//
// Sends `Authorization: OAuth <token>` like jsforce, adds ext.replay on subscribe like jsforce's
// Replay extension (no ext.replay on the handshake), and prints one JSON object per line:
//   {"kind":"handshake","successful":true,"clientId":"…"}   (from the incoming reply)
//   {"kind":"subscribe","successful":true}                  (every subscribe reply)
//   {"kind":"event","replayId":123,"type":"created"}
//   {"kind":"connect","successful":false,"error":"…","advice":{…}}
//   {"kind":"transport","connectionType":"long-polling"}  (every transport faye sends on)
// Faye re-subscribes by itself after a re-handshake. Exits when stdin closes.

import faye from "faye";

const [url, token, channel, replayArg] = process.argv.slice(2);
if (!url || !token || !channel || replayArg === undefined) {
    process.stderr.write("usage: fake-cometd-faye.mjs <url> <token> <channel> <replayId>\n");
    process.exit(2);
}
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let replayId = Number(replayArg);

const client = new faye.Client(url, {timeout: 5});
client.setHeader("Authorization", `OAuth ${token}`);
const transports = new Set();
client.addExtension({
    outgoing: (message, callback) => {
        if (message.channel === "/meta/subscribe") {
            message.ext = {...message.ext, replay: {[channel]: replayId}};
        }
        if (message.channel === "/meta/connect" && !transports.has(message.connectionType)) {
            transports.add(message.connectionType);
            print({kind: "transport", connectionType: message.connectionType});
        }
        callback(message);
    },
    incoming: (message, callback) => {
        if (message.channel === "/meta/handshake") {
            print({kind: "handshake", successful: message.successful, clientId: message.clientId});
        } else if (message.channel === "/meta/subscribe") {
            print({kind: "subscribe", successful: message.successful, error: message.error});
        } else if (message.channel === "/meta/connect" && !message.successful) {
            print({kind: "connect", successful: false, error: message.error, advice: message.advice});
        }
        callback(message);
    },
});

client.subscribe(channel, (data) => {
    const event = data && data.event;
    if (event && typeof event.replayId === "number") {
        replayId = event.replayId;
    }
    print({kind: "event", replayId: event && event.replayId, type: event && event.type});
});

process.stdin.resume();
process.stdin.on("end", () => {
    client.disconnect();
    setTimeout(() => process.exit(0), 500).unref();
});
