const { IPCClient } = require('./ipc-framework-nodejs');

class LoadBalancedClient {
    constructor(serviceType, options = {}) {
        this.serviceType = serviceType;
        this.client = new IPCClient(`${serviceType}-lb-client`, options);
        this.serviceInstances = [];
        this.currentIndex = 0;
        this.strategy = options.strategy || 'round_robin';
    }
    
    async initialize() {
        await this.client.connect();
        
        // Get available service instances
        const response = await this.client.sendRequest('system', {
            action: 'get_service_instances',
            service_type: this.serviceType
        });
        
        this.serviceInstances = response.payload.instances.filter(instance => instance.healthy);
        
        // Subscribe to instance updates
        this.client.subscribe('service_instances', (message) => {
            if (message.payload.service_type === this.serviceType) {
                this.updateInstances(message.payload);
            }
        });
        
        console.log(`Load balancer initialized for ${this.serviceType} with ${this.serviceInstances.length} instances`);
    }
    
    updateInstances(update) {
        const { action, instance } = update;
        
        switch (action) {
            case 'instance_added':
                if (instance.healthy) {
                    this.serviceInstances.push(instance);
                }
                break;
                
            case 'instance_removed':
                this.serviceInstances = this.serviceInstances.filter(i => i.id !== instance.id);
                break;
                
            case 'instance_health_changed':
                if (instance.healthy) {
                    if (!this.serviceInstances.find(i => i.id === instance.id)) {
                        this.serviceInstances.push(instance);
                    }
                } else {
                    this.serviceInstances = this.serviceInstances.filter(i => i.id !== instance.id);
                }
                break;
        }
    }
    
    selectInstance() {
        if (this.serviceInstances.length === 0) {
            throw new Error(`No healthy instances available for ${this.serviceType}`);
        }
        
        let instance;
        
        switch (this.strategy) {
            case 'round_robin':
                instance = this.serviceInstances[this.currentIndex];
                this.currentIndex = (this.currentIndex + 1) % this.serviceInstances.length;
                break;
                
            case 'random':
                instance = this.serviceInstances[Math.floor(Math.random() * this.serviceInstances.length)];
                break;
                
            case 'least_connections':
                instance = this.serviceInstances.reduce((min, current) => 
                    current.connections < min.connections ? current : min
                );
                break;
                
            default:
                instance = this.serviceInstances[0];
        }
        
        return instance;
    }
    
    async makeRequest(action, data, options = {}) {
        const maxRetries = options.retries || 3;
        let lastError;
        
        for (let attempt = 0; attempt < maxRetries; attempt++) {
            try {
                const instance = this.selectInstance();
                
                const response = await this.client.sendRequest(instance.channel, {
                    action: action,
                    data: data,
                    instance_id: instance.id
                });
                
                return response;
                
            } catch (error) {
                lastError = error;
                console.warn(`Request failed on attempt ${attempt + 1}:`, error.message);
                
                if (attempt < maxRetries - 1) {
                    await new Promise(resolve => setTimeout(resolve, 1000 * (attempt + 1)));
                }
            }
        }
        
        throw new Error(`All ${maxRetries} attempts failed. Last error: ${lastError.message}`);
    }
}

// Usage example
const processingService = new LoadBalancedClient('data-processor', {
    strategy: 'least_connections',
    host: 'localhost',
    port: 8888
});

processingService.initialize().then(async () => {
    try {
        const result = await processingService.makeRequest('process_data', {
            dataset: 'large_dataset.csv',
            algorithm: 'machine_learning'
        });
        
        console.log('Processing result:', result.payload);
    } catch (error) {
        console.error('Processing failed:', error.message);
    }
});
