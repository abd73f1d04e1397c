from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_api_tokens')]

    initial = False

    operations = [
        ops.AddField(
            model_name='ApiToken',
            name='credential_generation',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='AuthSession',
            name='credential_generation',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='AuthSession',
            name='device',
            field=fields.CharField(default='', db_default='', max_length=160),
        ),
        ops.AddIndex(
            model_name='AuthSession',
            index=Index(fields=['user_id', 'last_seen_at']),
        ),
        ops.AddField(
            model_name='User',
            name='credential_generation',
            field=fields.IntField(default=0, db_default=0),
        ),
    ]
