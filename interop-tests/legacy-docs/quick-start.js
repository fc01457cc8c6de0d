const { IPCClient } = require('./ipc-framework-nodejs');

async function main() {
    // Create client with TCP connection
    const client = new IPCClient('my_app', {
        host: 'localhost',
        port: 8888,
        reconnectAttempts: 5,
        reconnectDelay: 2000
    });

    // Set up event handlers
    client.onConnected(() => {
        console.log('âœ… Connected to Python server via TCP');
    });

    client.onDisconnected(() => {
        console.log('ðŸ“¡ Disconnected from Python server');
    });

    client.onError((error) => {
        console.error('âŒ Connection error:', error.message);
    });

    try {
        // Connect to Python server
        const connected = await client.connect();
        if (!connected) {
            throw new Error('Failed to connect to Python server');
        }

        // Subscribe to real-time notifications
        client.subscribe('notifications', (message) => {
            console.log('ðŸ”” Notification:', message.payload);
        });

        // Send request and get response
        const response = await client.sendRequest('api', {
            action: 'get_users',
            filters: { active: true }
        });

        console.log('ðŸ“¥ API Response:', response.payload);

        // Publish data to subscribers
        client.publish('events', {
            type: 'user_action',
            action: 'data_requested',
            timestamp: Date.now()
        });

    } catch (error) {
        console.error('âŒ Error:', error.message);
    } finally {
        client.disconnect();
    }
}

main().catch(console.error);
