const { IPCClient } = require('./ipc-framework-nodejs');

class MessageQueue {
    constructor(queueName, options = {}) {
        this.queueName = queueName;
        this.client = new IPCClient(`queue-${queueName}`, options);
        this.processors = new Map();
        this.isProcessing = false;
        this.maxConcurrency = options.maxConcurrency || 5;
        this.retryAttempts = options.retryAttempts || 3;
        this.retryDelay = options.retryDelay || 1000;
    }
    
    async initialize() {
        await this.client.connect();
        
        // Subscribe to queue messages
        this.client.subscribe(`queue:${this.queueName}`, (message) => {
            this.handleQueueMessage(message.payload);
        });
        
        console.log(`Message queue ${this.queueName} initialized`);
    }
    
    async enqueue(jobType, jobData, options = {}) {
        const job = {
            id: this.generateJobId(),
            type: jobType,
            data: jobData,
            priority: options.priority || 0,
            attempts: 0,
            maxAttempts: options.maxAttempts || this.retryAttempts,
            createdAt: Date.now(),
            scheduledFor: options.delay ? Date.now() + options.delay : Date.now()
        };
        
        await this.client.sendRequest('queue_manager', {
            action: 'enqueue',
            queue: this.queueName,
            job: job
        });
        
        return job.id;
    }
    
    registerProcessor(jobType, processorFunction) {
        this.processors.set(jobType, processorFunction);
    }
    
    async handleQueueMessage(message) {
        if (message.type === 'job_available') {
            await this.processJobs();
        }
    }
    
    async processJobs() {
        if (this.isProcessing) return;
        
        this.isProcessing = true;
        
        try {
            const response = await this.client.sendRequest('queue_manager', {
                action: 'dequeue',
                queue: this.queueName,
                count: this.maxConcurrency
            });
            
            const jobs = response.payload.jobs || [];
            
            if (jobs.length > 0) {
                await Promise.all(jobs.map(job => this.processJob(job)));
            }
        } catch (error) {
            console.error('Error processing jobs:', error.message);
        } finally {
            this.isProcessing = false;
        }
    }
    
    async processJob(job) {
        const processor = this.processors.get(job.type);
        
        if (!processor) {
            console.error(`No processor registered for job type: ${job.type}`);
            await this.markJobFailed(job, 'No processor available');
            return;
        }
        
        try {
            console.log(`Processing job ${job.id} (${job.type})`);
            
            const result = await processor(job.data);
            
            await this.markJobCompleted(job, result);
            
        } catch (error) {
            console.error(`Job ${job.id} failed:`, error.message);
            
            job.attempts++;
            
            if (job.attempts >= job.maxAttempts) {
                await this.markJobFailed(job, error.message);
            } else {
                await this.retryJob(job);
            }
        }
    }
    
    async markJobCompleted(job, result) {
        await this.client.sendRequest('queue_manager', {
            action: 'job_completed',
            job_id: job.id,
            result: result
        });
    }
    
    async markJobFailed(job, error) {
        await this.client.sendRequest('queue_manager', {
            action: 'job_failed',
            job_id: job.id,
            error: error
        });
    }
    
    async retryJob(job) {
        await this.client.sendRequest('queue_manager', {
            action: 'retry_job',
            job_id: job.id,
            delay: this.retryDelay * job.attempts
        });
    }
    
    generateJobId() {
        return `${Date.now()}-${Math.random().toString(36).substr(2, 9)}`;
    }
    
    async getQueueStats() {
        const response = await this.client.sendRequest('queue_manager', {
            action: 'get_queue_stats',
            queue: this.queueName
        });
        
        return response.payload;
    }
}

// Usage example
const emailQueue = new MessageQueue('email', {
    maxConcurrency: 3,
    retryAttempts: 3,
    retryDelay: 2000
});

// Register processors
emailQueue.registerProcessor('send_welcome', async (data) => {
    console.log(`Sending welcome email to ${data.email}`);
    // Simulate email sending
    await new Promise(resolve => setTimeout(resolve, 1000));
    return { sent: true, messageId: 'msg-123' };
});

emailQueue.registerProcessor('send_notification', async (data) => {
    console.log(`Sending notification: ${data.subject}`);
    // Simulate email sending
    await new Promise(resolve => setTimeout(resolve, 500));
    return { sent: true, messageId: 'msg-456' };
});

emailQueue.initialize().then(async () => {
    // Enqueue some jobs
    await emailQueue.enqueue('send_welcome', {
        email: 'user@example.com',
        name: 'John Doe'
    });
    
    await emailQueue.enqueue('send_notification', {
        email: 'admin@example.com',
        subject: 'Server maintenance scheduled',
        body: 'Maintenance will begin at 2 AM UTC'
    });
    
    // Start processing
    setInterval(async () => {
        const stats = await emailQueue.getQueueStats();
        console.log('Queue stats:', stats);
    }, 10000);
});
