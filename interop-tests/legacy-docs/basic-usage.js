const { IPCClient } = require('./ipc-framework-nodejs');

async function basicExample() {
    const client = new IPCClient('basic-app');
    
    await client.connect();
    
    // Send ping
    const pingResponse = await client.sendRequest('system', { action: 'ping' });
    console.log('Ping response:', pingResponse.payload);
    
    // Get server time
    const timeResponse = await client.sendRequest('system', { action: 'get_time' });
    console.log('Server time:', timeResponse.payload);
    
    client.disconnect();
}

basicExample();
