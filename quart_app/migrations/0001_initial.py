from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('username', fields.CharField(max_length=32)),
                ('username_key', fields.CharField(unique=True, max_length=128)),
                ('password_hash', fields.CharField(max_length=512)),
                ('is_active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An account: username is shown as typed, username_key makes it unique by case.'},
            bases=['UserMixin', 'Model'],
        ),
        ops.CreateModel(
            name='AuthSession',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key_hash', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('remember', fields.BooleanField(default=False)),
                ('fresh', fields.BooleanField(default=True)),
                ('fingerprint', fields.CharField(max_length=128)),
                ('ip', fields.CharField(max_length=45)),
                ('user_agent', fields.CharField(max_length=512)),
            ],
            options={'table': 'sessions', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A login: the cookie holds a random key, the table only its SHA-256.'},
            bases=['Model'],
        ),
    ]
