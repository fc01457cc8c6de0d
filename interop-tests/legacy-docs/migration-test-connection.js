const { IPCClient } = require('./ipc-framework-nodejs');

const client = new IPCClient('test-app');
client.connect().then(async (connected) => {
    if (connected) {
        console.log('âœ… v1.1.1 working correctly!');
        
        const response = await client.sendRequest('system', { action: 'ping' });
        console.log('Ping response:', response.payload);
        
        client.disconnect();
    } else {
        console.log('âŒ Connection failed');
    }
});
