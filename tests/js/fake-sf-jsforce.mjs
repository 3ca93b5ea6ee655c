// jsforce 3.10.16 (unmodified) against the fake Salesforce.
//
// Usage: node fake-sf-jsforce.mjs <loginUrl> <username> <password> <queueId>
//
// Logs in by SOAP (API 58.0), pages through every Case whose Subject starts with "page" (batch
// size 200 via Sforce-Query-Options), creates a Case owned by <queueId>, reads the routing row
// the trigger wrote for it, marks that row Processed, and prints ONE JSON object on stdout:
//   {"userId","orgId","instanceUrl","accessToken","totalSize","fetched","caseId","rowId","rowEvent","updated"}
// Any failure prints {"error": "..."} and exits 1.

import jsforce from "jsforce";

const [loginUrl, username, password, queueId] = process.argv.slice(2);
if (!loginUrl || !username || !password || !queueId) {
    process.stderr.write("usage: fake-sf-jsforce.mjs <loginUrl> <username> <password> <queueId>\n");
    process.exit(2);
}

try {
    const conn = new jsforce.Connection({loginUrl, version: "58.0"});
    const user = await conn.login(username, password);

    const paged = await conn.query("SELECT Id, Subject FROM Case WHERE Subject LIKE 'page%' ORDER BY Subject", {
        autoFetch: true,
        maxFetch: 100000,
        headers: {"Sforce-Query-Options": "batchSize=200"},
    });

    const created = await conn.sobject("Case").create({
        Subject: "Created by jsforce",
        OwnerId: queueId,
        SuppliedEmail: "customer@example.com",
        SuppliedName: "Jane Customer",
        ObjectRouting_Skills__c: "English",
    });
    if (!created.success) {
        throw new Error("case create failed: " + JSON.stringify(created));
    }

    const rows = await conn.query(
        `SELECT Id, Event__c, Status__c FROM Object_Routing_Queue__c WHERE Case__c = '${created.id}'`);
    const row = rows.records[0];
    if (!row) {
        throw new Error("the trigger wrote no routing row");
    }
    const updated = await conn.sobject("Object_Routing_Queue__c").update({
        Id: row.Id,
        Status__c: "Processed",
        Interaction_Id__c: "100200300",
    });

    process.stdout.write(JSON.stringify({
        userId: user.id,
        orgId: user.organizationId,
        instanceUrl: conn.instanceUrl,
        accessToken: conn.accessToken ? "present" : "missing",
        totalSize: paged.totalSize,
        fetched: paged.records.length,
        firstSubject: paged.records[0] && paged.records[0].Subject,
        caseId: created.id,
        rowId: row.Id,
        rowEvent: row.Event__c,
        updated: updated.success,
    }) + "\n");
} catch (e) {
    process.stdout.write(JSON.stringify({error: String(e && e.message || e), name: e && e.name, errorCode: e && e.errorCode}) + "\n");
    process.exit(1);
}
