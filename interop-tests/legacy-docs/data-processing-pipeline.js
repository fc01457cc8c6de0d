const { IPCClient } = require('./ipc-framework-nodejs');

class DataProcessor {
    constructor() {
        this.client = new IPCClient('data-processor', {
            reconnectAttempts: 10,
            reconnectDelay: 3000
        });
    }
    
    async start() {
        await this.client.connect();
        
        // Subscribe to incoming data
        this.client.subscribe('raw_data', this.processData.bind(this));
        
        console.log('Data processor started');
    }
    
    async processData(message) {
        const { data, id } = message.payload;
        
        try {
            // Send data to Python for processing
            const result = await this.client.sendRequest('processor', {
                action: 'process_data',
                data: data,
                options: {
                    algorithm: 'advanced',
                    validate: true
                }
            });
            
            // Publish processed result
            this.client.publish('processed_data', {
                id: id,
                result: result.payload,
                processed_at: Date.now()
            });
            
        } catch (error) {
            console.error(`Failed to process data ${id}:`, error.message);
            
            // Publish error notification
            this.client.publish('errors', {
                id: id,
                error: error.message,
                timestamp: Date.now()
            });
        }
    }
}

const processor = new DataProcessor();
processor.start();
